//! Text for log lines.

/// Cut a string to at most `max` bytes on a character boundary, marking the cut with `...`.
pub fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn cuts_on_a_character_boundary() {
        let mut s = "aé".repeat(10);
        super::truncate(&mut s, 4);
        assert_eq!(s, "aéa...");
        let mut short = String::from("ok");
        super::truncate(&mut short, 4);
        assert_eq!(short, "ok");
    }
}
