@mtls
Feature: Mutual TLS everywhere
  Runbook checklist: "Service-to-service communication encrypted". TradePulse: "Require mutual TLS
  mode STRICT". SomaAgentHub: "Apply mTLS policies (STRICT)", "non-mTLS traffic is blocked".

  @static
  Scenario Outline: <profile> · every workload requires mutual TLS as configured
    Given the profile "<profile>"
    And the manifests configured for it
    Then PeerAuthentication makes mutual TLS STRICT on every port of every workload
    And every DestinationRule originates ISTIO_MUTUAL

    @each-profile
    Examples:
      | profile |

  # Observed on the inbound listener of every workload: each bad peer is really sent and refused
  # at the TLS layer, and a valid SVID gets through the handshake (the control).
  @live @checklist
  Scenario Outline: <profile> · <service> refuses every caller that is not a mesh identity
    Given the profile "<profile>"
    And the manifests configured for it
    And the mesh is running for it
    Then "<service>" refuses plaintext, no client certificate, a foreign CA, an expired certificate and a foreign trust domain

    @each-sidecar
    Examples:
      | profile | service |
