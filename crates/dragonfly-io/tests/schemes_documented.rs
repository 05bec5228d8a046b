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

/// The README's diagram names every input and every output scheme (it is the first thing a
/// reader sees of them).
#[test]
fn the_readme_diagram_names_every_scheme() {
    let readme = include_str!("../../../README.md");
    let start = readme.find("source (").expect("the diagram");
    let diagram = &readme[start..start + readme[start..].find("```").expect("its end")];
    let words: Vec<&str> = diagram
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    for s in dragonfly_io::sources::SCHEMES {
        assert!(
            words.contains(&s.name),
            "README's diagram lacks input {}",
            s.name
        );
    }
    for s in dragonfly_io::sinks::SCHEMES {
        assert!(
            words.contains(&s.name),
            "README's diagram lacks output {}",
            s.name
        );
    }
}
