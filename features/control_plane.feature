@control-plane
Feature: Control plane and gateways running
  SomaAgentHub checklist: "Istio control plane running (istiod)", "Ingress gateway running". On the
  lab there is no istiod: meshproof compiles the configuration in process, exactly as istiod would
  translate it. The checkable half of the promise is that every sidecar, the ingress gateway
  included, is ready and has accepted everything it was configured with. On kind and existing
  clusters, the same checklist items read istiod's and the gateways' own status.

  @live @lab @checklist
  Scenario Outline: <profile> · the sidecar of <service> is running with its configuration
    Given the profile "<profile>"
    And the manifests configured for it
    And the lab mesh is running for it
    Then the sidecar of "<service>" is ready and serves every listener its configuration defines

    @each-service
    Examples:
      | profile | service |
