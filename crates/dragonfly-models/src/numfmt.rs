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
    // Round to p significant digits first; the exponent after rounding decides the style.
    let sci = format!("{:.*e}", p - 1, v);
    let (mantissa, exp) = sci.split_once('e').expect("{:e} always has an exponent");
    let exp: i32 = exp.parse().expect("exponent is an integer");
    if exp < -4 || exp >= p as i32 {
        let m = strip_zeros(mantissa);
        format!("{m}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
    } else {
        let decimals = (p as i32 - 1 - exp).max(0) as usize;
        strip_zeros(&format!("{:.*}", decimals, v)).to_string()
    }
}

fn strip_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// How Lua 5.1 / LuaJIT `tostring` prints a number.
pub fn lua_number(v: f64) -> String {
    fmt_g(v, 14)
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
