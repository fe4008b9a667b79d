@intents
Feature: Service-to-service intents
  The runbooks' intent tables as caller → callee promises: every request a profile allows is allowed,
  and every other request is denied. For each pair of services, every endpoint of the callee is
  asked with every method it serves, and with one method it does not serve. Anything not
  allowed must be denied.

  The static scenarios predict Istio's decision from the configured manifests (AuthorizationPolicy
  evaluated exactly as Istio does).

  @static
  Scenario Outline: <profile> · <from> → <to> is configured as the profile promises
    Given the profile "<profile>"
    And the manifests configured for it
    Then every request from "<from>" to "<to>" is predicted as the profile promises

    @each-pair
    Examples:
      | profile | from | to |

  # The same promises, observed: every request is really sent by the caller's Envoy sidecar with the
  # caller's SVID, and served or refused by the callee's Envoy RBAC (on the lab compiled from the
  # same manifests the way istiod compiles them; on a cluster by istiod itself). The observation
  # must equal the static prediction.
  @live
  Scenario Outline: <profile> · <from> → <to> behaves as the profile promises, through real sidecars
    Given the profile "<profile>"
    And the manifests configured for it
    And the mesh is running for it
    When "<from>" calls "<to>" on every endpoint through its sidecar
    Then every call was decided as the profile promises, and as the manifests predict

    @each-pair
    Examples:
      | profile | from | to |
