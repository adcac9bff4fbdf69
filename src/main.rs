use clap::Parser;

// The pipeline allocates many small, short-lived values per element and posting; mimalloc handles that
// pattern across threads better than the system allocator (see benches/masse.py).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // SAFETY: nothing has used libxml2 yet in this process.
    unsafe { fkoeko_adapter::xml::schema::allocate_with_mimalloc() };
    let cli = fkoeko_adapter::app::Cli::parse();
    match fkoeko_adapter::app::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("fkoeko: {e:#}");
            std::process::exit(1);
        }
    }
}
