//! Portico operator: turns each `IngressController` into an isolated proxy fleet.
