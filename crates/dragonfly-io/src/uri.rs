//! What every scheme's URI parser shares: the [`UriError`] a config error shows, splitting
//! `scheme://rest`, paths, `HOST:PORT` with the query string (`?name=value&...`), and the
//! message for a bad query parameter. The schemes' own parsers are beside their sources and
//! sinks (`kafka_uri`, `nats_uri`, `redis_uri`, each module's `parse`).

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
    #[error("{0}")]
    /// Nothing after `scheme://` (or no key, topic or subject).
    NoPath(String),
    #[error("{0}")]
    /// A bad `options` entry.
    BadOption(String),
    #[error("{0}")]
    /// A bad query parameter (`?name=value`).
    BadQuery(String),
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
        return Err(UriError::NoPath(format!("'{uri}' names no path")));
    }
    Ok((scheme, rest))
}

pub(crate) fn path(rest: &str) -> PathBuf {
    PathBuf::from(rest)
}

/// A network URI's parts: `ADDR/PATH?QUERY`.
pub(crate) struct NetUri<'a> {
    pub addr: &'a str,
    pub path: &'a str,
    pub query: Vec<(&'a str, &'a str)>,
}

/// Split what follows `scheme://` of a network URI; `what` names the path (key, topic,
/// subject) and `form` is the URI's form, for messages.
pub(crate) fn net<'a>(
    uri: &str,
    rest: &'a str,
    what: &str,
    form: &str,
) -> Result<NetUri<'a>, UriError> {
    let missing = || UriError::NoPath(format!("'{uri}' names no {what} (expected {form})"));
    let (addr, path) = rest.split_once('/').ok_or_else(missing)?;
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    if path.is_empty() {
        return Err(missing());
    }
    if addr.is_empty() {
        return Err(UriError::BadAddress(format!(
            "'{uri}': no server address (expected {form})"
        )));
    }
    let query = query
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| kv.split_once('=').unwrap_or((kv, "")))
        .collect();
    Ok(NetUri { addr, path, query })
}

/// A port number, or an error naming it.
pub(crate) fn port(uri: &str, p: &str) -> Result<u16, UriError> {
    p.parse::<u16>().ok().filter(|n| *n > 0).ok_or_else(|| {
        UriError::BadAddress(format!(
            "'{uri}': port '{p}' is not a number from 1 to 65535"
        ))
    })
}

/// An unknown or malformed query parameter.
pub(crate) fn bad_query(uri: &str, name: &str, value: &str, known: &str) -> UriError {
    UriError::BadQuery(format!(
        "'{uri}': query parameter '{name}={value}' is not understood (known: {known})"
    ))
}

#[cfg(test)]
mod tests {
    use super::UriError;
    use crate::{sinks, sources};
    use std::path::Path;

    fn input(uri: &str) -> UriError {
        sources::parse(uri, &[]).unwrap_err()
    }

    #[test]
    fn each_fault_has_its_own_error_naming_it() {
        match input("redis://127.0.0.1:notaport/k") {
            UriError::BadAddress(m) => assert!(m.contains("port 'notaport'"), "{m}"),
            e => panic!("{e:?}"),
        }
        match input("kafka://b:99999/t") {
            UriError::BadAddress(m) => assert!(m.contains("port '99999'"), "{m}"),
            e => panic!("{e:?}"),
        }
        match input("nats://127.0.0.1:4222/") {
            UriError::NoPath(m) => assert!(m.contains("names no subject"), "{m}"),
            e => panic!("{e:?}"),
        }
        match input("redis://h:6379/k?mode=lifo") {
            UriError::BadQuery(m) => assert!(m.contains("'mode=lifo'"), "{m}"),
            e => panic!("{e:?}"),
        }
        match input("nats://h/s?stream=S") {
            UriError::BadQuery(m) => assert!(m.contains("durable"), "{m}"),
            e => panic!("{e:?}"),
        }
        match input("gopher://x") {
            UriError::Unsupported { scheme, .. } => assert_eq!(scheme, "gopher"),
            e => panic!("{e:?}"),
        }
        match sinks::parse("kafka:///t", Path::new("/l"), &[]).unwrap_err() {
            UriError::BadAddress(m) => assert!(m.contains("no server address"), "{m}"),
            e => panic!("{e:?}"),
        }
        match input("syslog://udp:127.0.0.1") {
            UriError::BadAddress(m) => assert!(m.contains("HOST:PORT"), "{m}"),
            e => panic!("{e:?}"),
        }
    }
}
