//! Helpers referenced by the serde attributes that build.rs puts on the generated messages.

/// True when a field holds its default value, so that it is left out of manifests
/// (Kubernetes omits empty fields; `get -o yaml` stays short and re-applies unchanged).
pub fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}
