@drills @destructive @lab @serial
Feature: Game-day drills
  A fault is injected into a lab of the drill's own, the steady-state probes measure how long the
  mesh takes to show it and to recover by the runbook's procedure, and everything is undone and
  compared with the state recorded before the fault. Drills are data: scenarios/<name>.yaml.
  They run one at a time (@serial): each one measures time.

  Scenario: tradepulse · an expired mesh intermediate is detected and recovered per the runbook
    When the drill "expired-intermediate" runs on the lab
    Then the fault is detected within the drill's bound
    And the lab recovers within the drill's bound
    And no more requests fail than the drill allows
    And the undo restores the state recorded before the fault, leaving no process behind
    And the drill has no other finding

  Scenario: tradepulse · the yearly intermediate rotation with overlap fails not one request
    When the drill "intermediate-rotation" runs on the lab
    Then no failing signal appears while it runs
    And the lab recovers within the drill's bound
    And no more requests fail than the drill allows
    And the undo restores the state recorded before the fault, leaving no process behind
    And the drill has no other finding

  Scenario: soma-agent-hub · existing SVIDs keep working through a SPIRE server outage
    When the drill "spire-server-outage" runs on the lab
    Then the fault is detected within the drill's bound
    And the lab recovers within the drill's bound
    And no more requests fail than the drill allows
    And the undo restores the state recorded before the fault, leaving no process behind
    And the drill has no other finding

  Scenario: soma-agent-hub · a SPIRE agent outage past SVID expiry is caught although health checks pass
    When the drill "spire-agent-outage" runs on the lab
    Then the fault is detected within the drill's bound
    And health checks stayed green while the workload's identity had expired
    And the lab recovers within the drill's bound
    And the undo restores the state recorded before the fault, leaving no process behind
    And the drill has no other finding

  Scenario: tradepulse · allow-all policy drift is reported as widened access and reverted
    When the drill "allow-all-drift" runs on the lab
    Then the fault is detected within the drill's bound
    And the access it widened is reported as widened access
    And the lab recovers within the drill's bound
    And no more requests fail than the drill allows
    And the undo restores the state recorded before the fault, leaving no process behind
    And the drill has no other finding

  Scenario: tradepulse · a short-lived emergency grant takes effect, stays in scope and is revoked
    When the drill "emergency-override" runs on the lab
    Then the fault is detected within the drill's bound
    And the access it widened is reported as widened access
    And the lab recovers within the drill's bound
    And no more requests fail than the drill allows
    And the undo restores the state recorded before the fault, leaving no process behind
    And the drill has no other finding

  Scenario: tradepulse · a plaintext client against STRICT mTLS is refused and seen
    When the drill "plaintext-client" runs on the lab
    Then the fault is detected within the drill's bound
    And the lab recovers within the drill's bound
    And no more requests fail than the drill allows
    And the undo restores the state recorded before the fault, leaving no process behind
    And the drill has no other finding

  Scenario: soma-agent-hub · an unavailable admission engine fails open under Gatekeeper's default
    When the drill "admission-unavailable" runs on the lab
    Then the fault is detected within the drill's bound
    And the result states that admission fails open
    And the lab recovers within the drill's bound
    And the undo restores the state recorded before the fault, leaving no process behind
    And the drill has no other finding
