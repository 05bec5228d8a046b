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

/// docs/configuration.md's table of scheme options is the registry's rows (name, type,
/// default, meaning), as `dragonfly_io::options::reference_table` writes them between the
/// markers. `UPDATE_DOCS=1 cargo test -p dragonfly-io --test schemes_documented` rewrites it.
#[test]
fn the_table_of_scheme_options_is_generated_from_the_registry() {
    const BEGIN: &str = "<!-- scheme options: generated from the registry -->\n";
    const END: &str = "<!-- end of scheme options -->";
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/configuration.md");
    let doc = std::fs::read_to_string(path).unwrap();
    let start = doc.find(BEGIN).expect("the generated table's start marker") + BEGIN.len();
    let end = start + doc[start..].find(END).expect("its end marker");
    let table = dragonfly_io::options::reference_table();
    if doc[start..end] != table {
        if std::env::var("UPDATE_DOCS").as_deref() == Ok("1") {
            std::fs::write(path, format!("{}{table}{}", &doc[..start], &doc[end..])).unwrap();
            return;
        }
        panic!(
            "docs/configuration.md's table of scheme options is not the registry's: run\n  \
             UPDATE_DOCS=1 cargo test -p dragonfly-io --test schemes_documented\nexpected:\n{table}"
        );
    }
}
