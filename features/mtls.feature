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
