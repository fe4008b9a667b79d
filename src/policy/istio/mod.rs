//! Istio security policy semantics: AuthorizationPolicy, PeerAuthentication, DestinationRule.
