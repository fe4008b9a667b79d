@identity
Feature: Workload identity (SPIFFE)
  Every workload a runbook names holds an X.509-SVID whose one URI SAN is the SPIFFE ID the profile's
  schema gives it, chained to the mesh trust bundle and no longer-lived than the CA policy allows.
  Runbook checklist: "All services have mTLS certificates", "Workloads issued SVIDs".
  Tables tagged each-identity or each-profile are filled from the selected profiles at run time, so
  every service of every profile appears in the results by name.

  @checklist @svid
  Scenario Outline: <profile> · <identity> presents a valid X.509-SVID
    Given the profile "<profile>"
    When the workload certificate of "<identity>" is read from the target
    Then it is a valid X.509-SVID for "<spiffe_id>" within the workload TTL

    @each-identity
    Examples:
      | profile | identity | spiffe_id |

  Scenario Outline: <profile> · every promised identity follows the SPIFFE schema
    Given the profile "<profile>"
    Then every identity of the profile is a valid SPIFFE ID that follows its schema

    @each-profile
    Examples:
      | profile |

  @static
  Scenario Outline: the SPIFFE ID specification refuses <id>
    Then "<id>" is refused as a SPIFFE ID, naming "<reason>"

    Examples:
      | id                                      | reason         |
      | http://tradepulse/prod/strategy         | spiffe://      |
      | SPIFFE://tradepulse/prod/strategy       | scheme         |
      | spiffe:///prod/strategy                 | trust domain   |
      | spiffe://TradePulse/prod/strategy       | trust domain   |
      | spiffe://tradepulse:8443/prod/strategy  | trust domain   |
      | spiffe://ops@tradepulse/prod/strategy   | trust domain   |
      | spiffe://tradepulse/prod//strategy      | empty          |
      | spiffe://tradepulse/prod/./strategy     | must not be    |
      | spiffe://tradepulse/prod/../strategy    | must not be    |
      | spiffe://tradepulse/prod/strategy/      | trailing       |
      | spiffe://tradepulse/prod/strat%20egy    | character      |
      | spiffe://tradepulse/prod/strategy?x=1   | query          |
      | spiffe://tradepulse/prod/strategy#frag  | fragment       |

  @static
  Scenario Outline: the SPIFFE ID specification accepts <id>
    Then "<id>" is accepted as a SPIFFE ID

    Examples:
      | id                                                            |
      | spiffe://tradepulse/prod/strategy/optimizer                   |
      | spiffe://soma-agent-hub.local/ns/soma-agent-hub/sa/gateway-api |
      | spiffe://tradepulse                                           |

  # `istioctl proxy-config secret`: what each sidecar really serves, read from Envoy.
  @live @checklist
  Scenario Outline: <profile> · the sidecar of <service> serves its mTLS certificate
    Given the profile "<profile>"
    And the manifests configured for it
    And the mesh is running for it
    Then the sidecar of "<service>" serves the X.509-SVID the CA issued it

    @each-service
    Examples:
      | profile | service |
