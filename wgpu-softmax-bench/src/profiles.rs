//! A check on the workspace's build profiles: the release profile (the tests') builds
//! Burn's and CubeCL's heaviest crates at opt-level 0 to keep cold builds short, and the
//! `burn-bench` profile builds each of them at 3 again, so that Burn's host code is timed
//! as its users build it.

#[cfg(test)]
mod tests {
    /// `(crate, opt-level)` of each `[profile.<profile>.package.<crate>]` table of the
    /// workspace's manifest.
    fn overrides(manifest: &str, profile: &str) -> Vec<(String, String)> {
        let header = format!("[profile.{profile}.package.");
        let mut found = Vec::new();
        let mut lines = manifest.lines();
        while let Some(line) = lines.next() {
            if let Some(name) = line.strip_prefix(&header).and_then(|rest| rest.strip_suffix(']')) {
                let level = lines.next().and_then(|l| l.strip_prefix("opt-level = ")).unwrap_or("missing");
                found.push((name.to_owned(), level.to_owned()));
            }
        }
        found.sort();
        found
    }

    #[test]
    fn the_burn_bench_profile_builds_every_crate_the_release_profile_leaves_unoptimised_at_opt_level_3() {
        let manifest = include_str!("../../Cargo.toml");
        let release = overrides(manifest, "release");
        let bench = overrides(manifest, "burn-bench");
        assert!(release.len() >= 10, "the release profile's overrides were not found: {release:?}");
        assert!(release.iter().all(|(_, level)| level == "0"), "{release:?}");
        assert!(bench.iter().all(|(_, level)| level == "3"), "{bench:?}");
        let names = |list: &[(String, String)]| list.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
        assert_eq!(
            names(&release),
            names(&bench),
            "the release and burn-bench profiles name different crates"
        );
    }
}
