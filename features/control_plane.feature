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

  # On a cluster the same checklist items are the components' own status, as `kubectl rollout
  # status` judges it: istiod, the ingress gateway, Gatekeeper, and SPIRE where the profile uses it.
  @kube @checklist
  Scenario Outline: <profile> · every control-plane component reports ready
    Given the profile "<profile>"
    Then every control-plane component of its stack reports ready

    @each-profile
    Examples:
      | profile |
