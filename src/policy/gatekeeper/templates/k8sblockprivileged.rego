package k8sblockprivileged

import data.lib.meshproof.workload

default_message := "Container '{container}' is running in privileged mode"

# No container (init and ephemeral included) may run privileged.
violation contains {"msg": msg, "details": {"container": c.name}} if {
	some c in workload.containers
	c.securityContext.privileged == true
	message := object.get(input.parameters, "message", default_message)
	msg := workload.render(message, {"container": c.name, "name": workload.object_name})
}
