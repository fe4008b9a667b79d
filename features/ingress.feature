@ingress
Feature: Ingress gateway: the one way in from outside the mesh
  SomaAgentHub runbook §1: "External Traffic → Ingress Gateway (port 80/443) → Gateway API (10000)
  → Orchestrator (10001) → Policy Engine (10020)", "All inter-service communication: mTLS encrypted",
  and checklist item "Ingress gateway running".

  In the lab the ingress gateway is a real Envoy. It terminates TLS for the profile's external host
  (<profile>.example: the runbook names none) with a certificate from a public CA, never the mesh CA,
  and calls gateway-api over mTLS with its own SVID, the ingress service account's identity. Each
  echo app on the way calls the next service through its own sidecar, so every hop is a real mTLS
  call with the caller's SVID, decided by the callee's RBAC as compiled from the configured
  manifests.

  Only profiles with an ingress gateway have rows (@only-ingress): of the bundled profiles,
  SomaAgentHub; TradePulse has no ingress and no rows.

  @live @lab
  Scenario Outline: <profile> · an external HTTPS request crosses ingress → gateway-api → orchestrator → policy-engine
    Given the profile "<profile>"
    And the manifests configured for it
    And the lab mesh is running for it
    And its ingress gateway serves the external host
    When an external client sends "POST /v1/decide" to the external host, forwarded through "gateway-api → orchestrator → policy-engine"
    Then every hop was reached and saw the previous hop's SPIFFE ID

    @each-profile @only-ingress
    Examples:
      | profile |

  @live @lab
  Scenario Outline: <profile> · the ingress gateway turns away what is not HTTPS for its host
    Given the profile "<profile>"
    And the manifests configured for it
    And the lab mesh is running for it
    And its ingress gateway serves the external host
    Then the ingress gateway refuses an external request without TLS
    And the ingress gateway refuses a TLS handshake for another host name
    And the ingress gateway refuses a request for another Host

    @each-profile @only-ingress
    Examples:
      | profile |
