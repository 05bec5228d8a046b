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

/// Cut a string to at most `max` bytes of its own on a character boundary, marking the cut
/// with ` ... [N bytes cut]`; returns N (0: nothing was cut).
pub fn cut_marked(s: &mut String, max: usize) -> usize {
    if s.len() <= max {
        return 0;
    }
    let mut at = max;
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    let n = s.len() - at;
    s.truncate(at);
    s.push_str(&format!(" ... [{n} bytes cut]"));
    n
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_marked_cut_says_how_much_went() {
        let mut s = "é".repeat(10);
        assert_eq!(super::cut_marked(&mut s, 5), 16);
        assert_eq!(s, "éé ... [16 bytes cut]");
        let mut short = String::from("ok");
        assert_eq!(super::cut_marked(&mut short, 2), 0);
        assert_eq!(short, "ok");
    }

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
