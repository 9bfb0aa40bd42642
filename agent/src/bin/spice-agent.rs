//! Placeholder for `spice-agent` so the packaging can be built and tested; the lead replaces it.

fn main() {
    if std::env::args().skip(1).any(|a| a == "--help" || a == "-h") {
        println!("spice-agent (placeholder): usage: spice-agent [--help]");
        return;
    }
    eprintln!("spice-agent: placeholder binary, not the real agent");
    std::process::exit(1);
}
