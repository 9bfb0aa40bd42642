//! Placeholder for `spice-agentd` so the packaging can be built and tested; the lead replaces it.

fn main() {
    if std::env::args().skip(1).any(|a| a == "--help" || a == "-h") {
        println!("spice-agentd (placeholder): usage: spice-agentd [--help]");
        return;
    }
    eprintln!("spice-agentd: placeholder binary, not the real agent");
    std::process::exit(1);
}
