//! C `printf("%.Ng")` formatting of doubles, as Lua (`%.14g`) and Redis (`%.17g`) print them.

/// Format `v` the way C's `%.{precision}g` does.
pub fn fmt_g(v: f64, precision: usize) -> String {
    if v.is_nan() {
        return if v.is_sign_negative() {
            "-nan".into()
        } else {
            "nan".into()
        };
    }
    if v.is_infinite() {
        return if v < 0.0 { "-inf".into() } else { "inf".into() };
    }
    if v == 0.0 {
        return if v.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    let p = precision.max(1);
    // an integer of at most p digits (p <= 15, so exact in a double) prints as itself: the
    // common case (counts, ports, epochs) without the digit generation
    if p <= 15 && v.fract() == 0.0 && v.abs() < 10f64.powi(p as i32) {
        return (v as i64).to_string();
    }
    // p significant digits first (trailing zeros dropped); the exponent after rounding decides
    // the style
    let (digits, exp) = significant(v.abs(), p);
    let mut out = String::with_capacity(24);
    if v < 0.0 {
        out.push('-');
    }
    let digits = std::str::from_utf8(&digits).expect("ASCII digits");
    if exp < -4 || exp >= p as i32 {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push_str(&format!(
            "e{}{:02}",
            if exp < 0 { '-' } else { '+' },
            exp.abs()
        ));
    } else if exp < 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-exp - 1) as usize));
        out.push_str(digits);
    } else {
        let int = exp as usize + 1;
        if digits.len() <= int {
            out.push_str(digits);
            out.extend(std::iter::repeat_n('0', int - digits.len()));
        } else {
            out.push_str(&digits[..int]);
            out.push('.');
            out.push_str(&digits[int..]);
        }
    }
    out
}

/// `a` (finite, > 0) rounded to `p` significant digits, as its digits without trailing zeros
/// and the decimal exponent of the first one.
///
/// Fast path, for p <= 15: the shortest representation that reads back as `a` (Rust's `{:e}`,
/// the shortest and among those the closest). If it has at most `p` digits, they are the
/// answer: `a` is within half an ulp of them (relatively 2^-53 at most), less than half a unit
/// in the p-th digit (5 x 10^-16 at least for p = 15; not so at 16 or 17 digits, where `0.2`
/// prints as 0.20000000000000001). If it has more, its digits rounded at `p` are the answer
/// too, unless they end in a lone 5 right after the p-th digit: a rounding boundary strictly
/// between `a` and the shortest representation would be a shorter or closer representation
/// that reads back as `a`. That tie, and p > 15, take the exact path (`{:.*e}`, correctly
/// rounded). A property test holds it to the exact formatter byte for byte.
fn significant(a: f64, p: usize) -> (Vec<u8>, i32) {
    if p <= 15 {
        let short = Sci::write(format_args!("{a:e}"));
        let (m, e) = split_sci(short.as_str());
        let mut digits: Vec<u8> = m.bytes().filter(|b| *b != b'.').collect();
        let mut exp = e;
        if digits.len() <= p {
            return (digits, exp);
        }
        let tie = digits.len() == p + 1 && digits[p] == b'5';
        if !tie {
            let up = digits[p] >= b'5';
            digits.truncate(p);
            if up && round_up(&mut digits) {
                exp += 1;
            }
            strip_trailing_zeros(&mut digits);
            return (digits, exp);
        }
    }
    let long;
    let exact = if p <= 17 {
        Sci::write(format_args!("{:.*e}", p - 1, a))
    } else {
        long = format!("{:.*e}", p - 1, a);
        Sci::Long(&long)
    };
    let (m, exp) = split_sci(exact.as_str());
    let mut digits: Vec<u8> = m.bytes().filter(|b| *b != b'.').collect();
    strip_trailing_zeros(&mut digits);
    (digits, exp)
}

/// `{:e}` output, on the stack: at most 17 digits (the longest shortest representation; the
/// exact path asks for at most 17), a point, `e` and a 4-character exponent.
/// (More digits than that are asked for only by a precision over 17: `Long`, on the heap.)
enum Sci<'a> {
    Short([u8; 32], usize),
    Long(&'a str),
}

impl Sci<'_> {
    fn write(args: std::fmt::Arguments) -> Sci<'static> {
        let mut s = Short { b: [0; 32], n: 0 };
        std::fmt::Write::write_fmt(&mut s, args).expect("{:e} of a finite double fits 32 bytes");
        Sci::Short(s.b, s.n)
    }

    fn as_str(&self) -> &str {
        match self {
            Sci::Short(b, n) => std::str::from_utf8(&b[..*n]).expect("ASCII"),
            Sci::Long(s) => s,
        }
    }
}

struct Short {
    b: [u8; 32],
    n: usize,
}

impl std::fmt::Write for Short {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.n + s.len();
        self.b
            .get_mut(self.n..end)
            .ok_or(std::fmt::Error)?
            .copy_from_slice(s.as_bytes());
        self.n = end;
        Ok(())
    }
}

/// `d.ddd` and the exponent of `{:e}`'s output.
fn split_sci(s: &str) -> (&str, i32) {
    let (m, e) = s.split_once('e').expect("{:e} always has an exponent");
    (m, e.parse().expect("exponent is an integer"))
}

/// Add one unit in the last digit; true when it carried out of the first (999 -> 1, and the
/// exponent goes up by one).
fn round_up(digits: &mut Vec<u8>) -> bool {
    for d in digits.iter_mut().rev() {
        if *d == b'9' {
            *d = b'0';
        } else {
            *d += 1;
            return false;
        }
    }
    digits.clear();
    digits.push(b'1');
    true
}

fn strip_trailing_zeros(digits: &mut Vec<u8>) {
    while digits.len() > 1 && digits.last() == Some(&b'0') {
        digits.pop();
    }
}

/// How Lua 5.1 / LuaJIT `tostring` prints a number.
pub fn lua_number(v: f64) -> String {
    fmt_g(v, 14)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The formatter before the fast path (two correctly rounded formats): the reference.
    fn reference(v: f64, precision: usize) -> String {
        if v.is_nan() || v.is_infinite() || v == 0.0 {
            return fmt_g(v, precision);
        }
        let p = precision.max(1);
        let sci = format!("{:.*e}", p - 1, v);
        let (mantissa, exp) = sci.split_once('e').unwrap();
        let exp: i32 = exp.parse().unwrap();
        let strip = |s: &str| -> String {
            if s.contains('.') {
                s.trim_end_matches('0').trim_end_matches('.').to_string()
            } else {
                s.to_string()
            }
        };
        if exp < -4 || exp >= p as i32 {
            format!(
                "{}e{}{:02}",
                strip(mantissa),
                if exp < 0 { '-' } else { '+' },
                exp.abs()
            )
        } else {
            let decimals = (p as i32 - 1 - exp).max(0) as usize;
            strip(&format!("{:.*}", decimals, v))
        }
    }

    /// Doubles where the fast path is tested hardest: any bit pattern, values with few
    /// digits, and values one ulp around p-digit rounding boundaries (ties).
    fn doubles() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<u64>()
                .prop_map(f64::from_bits)
                .prop_filter("finite", |v| v.is_finite()),
            (any::<i64>(), -30i32..30).prop_map(|(m, e)| (m % 100_000_000) as f64 * 10f64.powi(e)),
            // integers, and integers around powers of ten (the integer path's edge)
            (-(1i64 << 53)..(1i64 << 53)).prop_map(|i| i as f64),
            (0i32..18, -2i64..3).prop_map(|(k, d)| 10f64.powi(k) + d as f64),
            (1u64..100_000_000_000_000, -20i32..20, 0u8..3).prop_map(|(m, e, k)| {
                // m5 x 10^e: a tie at 14 or 15 digits, then one ulp either side
                let v = (m * 10 + 5) as f64 * 10f64.powi(e);
                match k {
                    0 => v,
                    1 => f64::from_bits(v.to_bits() + 1),
                    _ => f64::from_bits(v.to_bits() - 1),
                }
            }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]
        /// Byte for byte what the exact formatter printed, at the precisions the engine uses.
        #[test]
        fn the_fast_path_prints_what_the_exact_one_did(v in doubles(), p in prop::sample::select(vec![1usize, 3, 6, 14, 15, 16, 17, 20])) {
            prop_assert_eq!(fmt_g(v, p), reference(v, p), "{:e} at {}", v, p);
            prop_assert_eq!(fmt_g(-v, p), reference(-v, p));
        }
    }

    #[test]
    fn matches_c_printf() {
        assert_eq!(fmt_g(1.0 / 3.0, 14), "0.33333333333333");
        assert_eq!(fmt_g(2.0 / 3.0, 14), "0.66666666666667");
        assert_eq!(fmt_g(8.0, 14), "8");
        assert_eq!(fmt_g(1251312473193400.0, 14), "1.2513124731934e+15");
        assert_eq!(fmt_g(0.0001, 14), "0.0001");
        assert_eq!(fmt_g(0.00001, 14), "1e-05");
        assert_eq!(fmt_g(0.2, 17), "0.20000000000000001");
        assert_eq!(fmt_g(14.0, 17), "14");
        assert_eq!(fmt_g(1.0 / (1.0 + 4f64.exp()), 17), "0.017986209962091559");
        assert_eq!(fmt_g(-2.5, 14), "-2.5");
        assert_eq!(fmt_g(1e100, 14), "1e+100");
        assert_eq!(fmt_g(99999999999999.9, 14), "1e+14");
        assert_eq!(fmt_g(123456.0, 3), "1.23e+05");
        assert_eq!(fmt_g(99999999999999.0, 14), "99999999999999");
        assert_eq!(fmt_g(100000000000000.0, 14), "1e+14");
        assert_eq!(fmt_g(-600.0, 14), "-600");
        assert_eq!(fmt_g(999.0, 3), "999");
        assert_eq!(fmt_g(1000.0, 3), "1e+03");
        assert_eq!(fmt_g(0.1, 25), "0.1000000000000000055511151");
        assert_eq!(fmt_g(-1.0 / 3.0, 20), "-0.33333333333333331483");
    }
}
