//! Tests that cannot run here say so where it is seen, not only in captured output.
//!
//! A test whose tool or privilege is missing (podman, root, a browser) calls [`skip`] and
//! returns. Cargo's harness counts it as passed and hides what it printed, so `skip` also
//! appends one line (`test: reason`) to the file named by `DRAGONFLY_SKIPS`: `scripts/test`
//! sets it, and prints the count and the reasons after the suite, so a run that skipped
//! something says so in its last lines.

use std::io::Write;

/// Say that the running test is skipped, and why (then return from the test).
pub fn skip(reason: &str) {
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("a test");
    eprintln!("skipped: {reason}");
    if let Some(path) = std::env::var_os("DRAGONFLY_SKIPS") {
        let line = format!("{test}: {}\n", reason.replace('\n', " "));
        // one write of a short line with O_APPEND: lines of parallel tests do not mix
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = f.write_all(line.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_skip_is_written_where_the_test_command_reads_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("skips");
        // only this test sets the variable in this process
        std::env::set_var("DRAGONFLY_SKIPS", &file);
        super::skip("no podman\nhere");
        let text = std::fs::read_to_string(&file).unwrap();
        assert_eq!(
            text,
            "skip::tests::a_skip_is_written_where_the_test_command_reads_it: no podman here\n"
        );
    }
}
