package k8srequiredlabels

import data.lib.meshproof.workload

default_message := "Pod '{name}' missing required label '{label}'"

# The pod (or the pod template of a controller) must carry every label in `labels`.
violation contains {"msg": msg, "details": {"missing_label": label}} if {
	provided := object.get(workload.pod_metadata, "labels", {})
	some label in input.parameters.labels
	not has_key(provided, label)
	message := object.get(input.parameters, "message", default_message)
	msg := workload.render(message, {"label": label, "name": workload.object_name})
}

has_key(obj, key) if {
	_ = obj[key]
}
