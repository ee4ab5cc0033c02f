//! Portico proxy: serves the Ingresses of one IngressClass.
