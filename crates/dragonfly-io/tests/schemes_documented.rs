//! Every scheme's row (name and options) appears in the reference (docs/configuration.md).

#[test]
fn every_input_scheme_and_option_is_in_the_reference() {
    let doc = include_str!("../../../docs/configuration.md");
    let start = doc.find("## URI schemes").expect("a URI schemes section");
    let section = &doc[start..];
    for s in dragonfly_io::sources::SCHEMES {
        assert!(
            section.contains(&format!("`{}://", s.name)),
            "docs/configuration.md does not describe {}://",
            s.name
        );
        for o in s.options.iter().filter(|o| o.name != "*") {
            assert!(
                doc.contains(&format!("{} =", o.name)) || doc.contains(&format!("`{}`", o.name)),
                "docs/configuration.md does not describe option '{}' of {}://",
                o.name,
                s.name
            );
        }
    }
}

#[test]
fn every_output_scheme_and_option_is_in_the_reference() {
    let doc = include_str!("../../../docs/configuration.md");
    let section = &doc[doc.find("## URI schemes").expect("a URI schemes section")..];
    for s in dragonfly_io::sinks::SCHEMES {
        assert!(
            section.contains(&format!("`{}://", s.name)),
            "docs/configuration.md does not describe {}:// (output)",
            s.name
        );
        for o in s.options.iter().filter(|o| o.name != "*") {
            assert!(
                doc.contains(&format!("`{}`", o.name)),
                "docs/configuration.md does not describe option '{}' of {}:// (output)",
                o.name,
                s.name
            );
        }
    }
}
