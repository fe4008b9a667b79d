@spire @lab
Feature: SPIRE workload identity
  SomaAgentHub runbook, section 3 and the checklist: "SPIRE server running", "SPIRE agents running on
  all nodes", "Workloads issued SVIDs", and "Verify certificate rotation". Real spire-server and
  spire-agent processes: join-token node attestation, unix workload attestation standing in for the
  runbook's k8s selectors, registration entries from the profile, and lab-short TTLs (reported).

  @checklist
  Scenario Outline: <profile> · the SPIRE server and its agents are running
    Given the profile "<profile>"
    And its SPIRE server and agents are running
    Then the SPIRE server is healthy and holds every registration entry of the profile
    And every SPIRE agent is attested and healthy
    And a workload with no registration entry gets no SVID

    @each-profile @only-spire
    Examples:
      | profile |

  @checklist
  Scenario Outline: <profile> · <service> is issued its SVID by SPIRE
    Given the profile "<profile>"
    And its SPIRE server and agents are running
    Then "<service>" fetches an X.509-SVID for exactly its registered SPIFFE ID

    @each-service @only-spire
    Examples:
      | profile | service |

  @slow
  Scenario Outline: <profile> · SPIRE renews an SVID before it expires
    Given the profile "<profile>"
    And its SPIRE server and agents are running
    Then SPIRE renews the SVID of "gateway-api" before it expires

    @each-profile @only-spire
    Examples:
      | profile |
