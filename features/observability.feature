@observability
Feature: Metrics exported
  Runbook checklist: "Metrics exported to Prometheus". TradePulse: alerts on
  istio_requests_total{response_code="403"} for mesh-denied requests. In the lab, the share of this
  that can be checked is the sidecars' own RBAC counters (envoy_http_rbac_allowed / _denied); on a
  cluster it is istio_requests_total itself, as each callee's sidecar reports it. Both must count
  what was really allowed and refused.

  @live @checklist
  Scenario Outline: <profile> · RBAC decisions are counted where Prometheus would scrape them
    Given the profile "<profile>"
    And the manifests configured for it
    And the mesh is running for it
    Then the callees' Envoy RBAC counters account for every allowed and denied call

    @each-profile
    Examples:
      | profile |
