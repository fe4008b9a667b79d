# Shared by meshproof's bundled ConstraintTemplates (shipped as the template's `libs`).
#
# Gatekeeper evaluates the object under review as it is. A Pod carries its own spec; a workload
# controller carries the pod template that its Pods will be stamped from, so rules judge that
# template: rejecting the Deployment at apply time instead of failing its Pods later.
package lib.meshproof.workload

# Kinds whose pod template sits at spec.template.
template_kinds := {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "ReplicationController", "Job"}

review_kind := input.review.kind.kind

pod_spec := input.review.object.spec if review_kind == "Pod"

pod_spec := input.review.object.spec.template.spec if review_kind in template_kinds

pod_spec := input.review.object.spec.jobTemplate.spec.template.spec if review_kind == "CronJob"

pod_metadata := object.get(input.review.object, "metadata", {}) if review_kind == "Pod"

pod_metadata := object.get(input.review.object.spec.template, "metadata", {}) if review_kind in template_kinds

pod_metadata := object.get(input.review.object.spec.jobTemplate.spec.template, "metadata", {}) if {
	review_kind == "CronJob"
}

# The name the messages use: the object's own (a Pod's, or the controller's).
object_name := object.get(object.get(input.review.object, "metadata", {}), "name", "")

# Containers that run with the pod's lifetime: regular and init containers.
app_containers contains c if {
	some field in ["containers", "initContainers"]
	some c in pod_spec[field]
}

# Every container, including ephemeral (`kubectl debug`) containers.
containers contains c if some c in app_containers

containers contains c if some c in pod_spec.ephemeralContainers

# A message template with `{placeholder}`s filled in.
render(template, values) := strings.replace_n({sprintf("{%s}", [k]): sprintf("%v", [v]) | some k, v in values}, template)
