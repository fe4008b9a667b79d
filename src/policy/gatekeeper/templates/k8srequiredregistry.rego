package k8srequiredregistry

import data.lib.meshproof.workload

default_message := "Image '{image}' from disallowed registry"

# Every image of every container (init and ephemeral included) must start with an allowed prefix.
# No `registries` parameter allows nothing: the policy fails closed.
violation contains {"msg": msg, "details": {"container": c.name, "image": c.image}} if {
	some c in workload.containers
	not allowed(c.image)
	message := object.get(input.parameters, "message", default_message)
	msg := workload.render(message, {"image": c.image, "container": c.name, "name": workload.object_name})
}

allowed(image) if {
	some prefix in input.parameters.registries
	startswith(image, prefix)
}
