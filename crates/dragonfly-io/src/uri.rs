use std::path::PathBuf;

/// A URI in config.lua that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UriError {
    #[error("'{0}' has no scheme (expected e.g. file://, tail://, ipc://)")]
    NoScheme(String),
    #[error("scheme '{scheme}://' is not supported {role} (supported: {supported})")]
    Unsupported {
        scheme: String,
        role: &'static str,
        supported: String,
    },
    #[error("'{0}' names no path")]
    NoPath(String),
    #[error("{0}")]
    BadOption(String),
    #[error("{0}")]
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
