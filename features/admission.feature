@admission
Feature: Admission policy (OPA Gatekeeper)
  SomaAgentHub runbook, "Test Policy Violations": the four pods and their exact outcomes. Checklist:
  "OPA/Gatekeeper policies enforced", "Policy violations blocked". The ConstraintTemplates are
  evaluated under Gatekeeper's contract, and the denial text is in Gatekeeper's own format.

  Scenario Outline: soma-agent-hub · the runbook's <pod> is <outcome>
    Given the profile "soma-agent-hub"
    And the manifests configured for it
    When the runbook's pod "<pod>" is submitted for admission
    Then it is <outcome>, with the message "<message>"

    Examples:
      | pod            | outcome  | message                                                           |
      | bad-registry   | denied   | Image 'evil-registry.com/malware:latest' from disallowed registry |
      | bad-privileged | denied   | Container 'app' is running in privileged mode                     |
      | bad-resources  | denied   | Container 'app' missing resource requests                         |
      | good-pod       | admitted |                                                                   |

  Scenario: soma-agent-hub · every workload the manifests deploy passes admission
    Given the profile "soma-agent-hub"
    And the manifests configured for it
    Then every workload in the manifests passes admission audit
