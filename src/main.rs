use clap::Parser;

fn main() {
    let cli = fkoeko_adapter::app::Cli::parse();
    match fkoeko_adapter::app::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("fkoeko: {e:#}");
            std::process::exit(1);
        }
    }
}
