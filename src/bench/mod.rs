//! `isthmus bench …`: benchmarks that print their figures. Each submodule owns one benchmark;
//! `status_fixture` is the cluster `bench status` and `tests/status_cli.rs` read.

pub mod auth_api;
pub mod ipam;
pub mod ipam_kube;
pub mod ipam_kube_restart;
pub mod ipam_state;
pub mod nat_shards;
pub mod stats;
pub mod status;
pub mod status_fixture;

/// The Cargo profile that built this binary: `release`, `lab` (what `scripts/lab` builds: no
/// LTO), `debug`… (from `build.rs`).
pub const BUILD_PROFILE: &str = env!("ISTHMUS_BUILD_PROFILE");

/// What a benchmark prints first when its binary is not a `release` build, whose figures
/// `docs/BENCHMARKS.md` records; `None` for a release build.
pub fn profile_warning() -> Option<String> {
    profile_warning_for(BUILD_PROFILE)
}

fn profile_warning_for(profile: &str) -> Option<String> {
    let cost = match profile {
        "release" => return None,
        "lab" => "no LTO: the control plane runs ~20 % slower",
        "debug" => "unoptimised: figures are many times slower",
        _ => "not the release profile",
    };
    Some(format!(
        "note: this binary was built with the `{profile}` profile ({cost}); docs/BENCHMARKS.md \
         records `release` builds: `cargo build --release`, then `target/release/isthmus`"
    ))
}

#[cfg(test)]
mod tests {
    use super::profile_warning_for;

    #[test]
    fn only_a_release_build_benchmarks_without_a_note() {
        assert_eq!(profile_warning_for("release"), None);
        let lab = profile_warning_for("lab").expect("a lab build is noted");
        assert!(
            lab.contains("`lab` profile") && lab.contains("no LTO"),
            "{lab}"
        );
        assert!(profile_warning_for("debug").is_some());
        assert!(profile_warning_for("custom").is_some());
    }
}
