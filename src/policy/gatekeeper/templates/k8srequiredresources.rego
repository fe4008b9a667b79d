package k8srequiredresources

import data.lib.meshproof.workload

default_message := "Container '{container}' missing resource requests"

default_limits_message := "Container '{container}' missing resource limits"

required := ["cpu", "memory"]

# Regular and init containers must request and limit both cpu and memory. Ephemeral containers are
# exempt: Kubernetes forbids resources on them, so requiring any would block every `kubectl debug`.
violation contains {"msg": msg, "details": {"container": c.name, "missing_requests": missing}} if {
	some c in workload.app_containers
	missing := missing_resources(c, "requests")
	count(missing) > 0
	message := object.get(input.parameters, "message", default_message)
	msg := workload.render(message, {"container": c.name, "name": workload.object_name})
}

violation contains {"msg": msg, "details": {"container": c.name, "missing_limits": missing}} if {
	some c in workload.app_containers
	missing := missing_resources(c, "limits")
	count(missing) > 0
	message := object.get(input.parameters, "limitsMessage", default_limits_message)
	msg := workload.render(message, {"container": c.name, "name": workload.object_name})
}

missing_resources(c, field) := [r | some r in required; not has_quantity(c, field, r)]

has_quantity(c, field, r) if {
	quantity := c.resources[field][r]
	quantity != null
	quantity != ""
}
