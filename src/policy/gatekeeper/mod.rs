//! Gatekeeper admission: ConstraintTemplates and constraints evaluated in process with regorus.
