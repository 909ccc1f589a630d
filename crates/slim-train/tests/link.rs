//! Tests of the link settings from build.rs: this crate's binaries start, and reach
//! libtorch, without LD_LIBRARY_PATH.

#[test]
fn binaries_find_libtorch_without_ld_library_path() {
    // A binary that cannot load libtorch dies in the dynamic loader before `main`, so
    // listing this binary's tests with the variable unset shows whether the rpath works.
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(&exe)
        .arg("--list")
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{} without LD_LIBRARY_PATH: {}",
        exe.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let t = tch::Tensor::from_slice(&[1.0f32, 2.0]).sum(tch::Kind::Float);
    assert_eq!(f64::try_from(t).unwrap(), 3.0);
}
