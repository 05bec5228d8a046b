use std::path::PathBuf;

/// A URI in config.lua that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UriError {
    #[error("'{0}' has no scheme (expected e.g. file://, tail://, ipc://)")]
    /// No `scheme://`.
    NoScheme(String),
    #[error("scheme '{scheme}://' is not supported {role} (supported: {supported})")]
    /// A scheme this role does not have.
    Unsupported {
        /// The scheme given.
        scheme: String,
        /// "as an input", "as an output".
        role: &'static str,
        /// The schemes there are.
        supported: String,
    },
    #[error("'{0}' names no path")]
    /// Nothing after `scheme://`.
    NoPath(String),
    #[error("{0}")]
    /// A bad `options` entry or query parameter.
    BadOption(String),
    #[error("{0}")]
    /// A bad host or port.
    BadAddress(String),
}

/// Split `scheme://rest`; the rest must be non-empty.
pub(crate) fn split(uri: &str) -> Result<(&str, &str), UriError> {
    let (scheme, rest) = uri
        .split_once("://")
        .ok_or_else(|| UriError::NoScheme(uri.to_string()))?;
    if rest.is_empty() {
        return Err(UriError::NoPath(uri.to_string()));
    }
    Ok((scheme, rest))
}

pub(crate) fn path(rest: &str) -> PathBuf {
    PathBuf::from(rest)
}
