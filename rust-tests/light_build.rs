//! A crate that depends on melon-ipc compiles the library's normal and build dependencies
//! only: today libc and nix, and their build-time helpers (autocfg, cfg_aliases). The C
//! header generator (cbindgen, with syn and serde) is a package of its own
//! (`scripts/gen-header`); when it ran in build.rs every dependent crate compiled it on a
//! clean build (issue 24). These tests fail if cbindgen, syn or any proc-macro crate comes
//! back among those dependencies, in either build.
//!
//! `cargo tree --offline` on this package (the cargo running the tests, else `cargo`): no
//! network, well under a second.

use std::process::Command;

/// Crates a dependent must not compile: the header generator and the parser behind it and
/// behind every derive macro.
const FORBIDDEN: &[&str] = &["cbindgen", "syn"];

/// The crates (`name vX.Y.Z ...` lines) of the library's normal and build dependencies,
/// the package itself included (and its dev-dependencies' with `dev`), for this host (`--target all` would need, offline, the
/// downloaded sources of other platforms' crates), with these feature arguments.
fn library_dependencies(features: &[&str], dev: bool) -> Vec<String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["tree", "--offline", "--color", "never", "--prefix", "none"])
        .args([
            "-e",
            if dev {
                "normal,build,dev"
            } else {
                "normal,build"
            },
        ])
        .args(["-p", "melon-ipc"])
        .args(features)
        .output()
        .expect("cannot run cargo tree");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "cargo tree failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

fn check(features: &[&str]) {
    let lines = library_dependencies(features, false);
    let names: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    // The listing is what it should be at all (an empty one would pass below).
    for expected in ["melon-ipc", "libc", "nix"] {
        assert!(
            names.contains(&expected),
            "{features:?}: {expected} not among the dependencies:\n{}",
            lines.join("\n")
        );
    }
    let heavy: Vec<&String> = lines
        .iter()
        .filter(|l| {
            let name = l.split_whitespace().next().unwrap_or("");
            FORBIDDEN.contains(&name) || l.contains("(proc-macro)")
        })
        .collect();
    assert!(
        heavy.is_empty(),
        "{features:?}: a crate that depends on melon-ipc would compile {heavy:?} \
         (keep header generation out of build.rs and the library's dependencies: \
         scripts/gen-header). Its dependencies:\n{}",
        lines.join("\n")
    );
}

#[test]
fn standalone_build_compiles_no_generator() {
    check(&[]);
}

#[test]
fn melon_build_compiles_no_generator() {
    check(&["--no-default-features", "--features", "melon"]);
}

/// Not a dev-dependency either: cbindgen's tree turns on bitflags' "std" (through tempfile
/// and rustix), which nix uses too, so with cbindgen among the dev-dependencies the test
/// builds would compile nix, and the library, with other features than `cargo build`; the
/// two variants of the library write the same files, and `cargo build` and `cargo test`
/// would each recompile it after the other.
#[test]
fn generator_is_not_a_dev_dependency() {
    let lines = library_dependencies(&[], true);
    let found: Vec<&String> = lines
        .iter()
        .filter(|l| l.split_whitespace().next() == Some("cbindgen"))
        .collect();
    assert!(
        found.is_empty(),
        "cbindgen among melon-ipc's dependencies ({found:?}): it belongs to scripts/gen-header"
    );
}
