//! The README's first command keeps working: `just demo` runs `portico-demo` in the test
//! network namespace; this runs the same binary and checks what it prints.

use std::process::Command;

#[test]
fn demo_routes_balances_and_isolates_teams() {
    portico_tests::netns::require();
    let out = Command::new(portico_tests::bin_path("portico-demo"))
        .env("PORTICO_LOG_FORMAT", "text")
        .output()
        .expect("run portico-demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "portico-demo failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        "GET http://shop.example.com/                 → 200 shop-",
        "GET http://shop.example.com/api/orders       → 200 api-",
        "GET http://unknown.example.com/              → 404",
        "shop-1   ####",
        "shop-2   ####",
        "shop-3   ####",
        "team B's proxy, blog.example.com   → 200 blog-",
        "team A's proxy, blog.example.com   → 404",
        "team A's proxy, sneaky.example.com → 404",
        "Warning IngressRejected",
        "Ready=True",
        "Ingress team-b/sneaky: status.loadBalancer (none: not served)",
    ] {
        assert!(
            stdout.contains(expected),
            "the demo output lacks {expected:?}:\n{stdout}"
        );
    }
}
