//! The `nhi-linkage` command. All work happens in the library; this only parses arguments,
//! sets up logging and maps the outcome to an exit status.

use clap::Parser;
use nhi_linkage::commands::{self, Cli};

// glibc malloc spent a quarter of a full load's cycles in malloc/free/consolidate
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    commands::init_logging(cli.verbose, cli.quiet);
    match commands::dispatch(cli) {
        Ok(status) => status.into(),
        Err(e)
            if e.downcast_ref::<nhi_linkage::engine::interrupt::Interrupted>()
                .is_some() =>
        {
            eprintln!("nhi-linkage: {e}");
            commands::Exit::Interrupted.into()
        }
        Err(e) if e.downcast_ref::<nhi_linkage::ledger::LedgerCorrupt>().is_some() => {
            eprintln!("nhi-linkage: {e}");
            commands::Exit::Aborted.into()
        }
        Err(e) => {
            // Messages are built by this crate from typed values; sensitive types print masked.
            eprintln!("nhi-linkage: error: {e:#}");
            commands::Exit::Usage.into()
        }
    }
}
