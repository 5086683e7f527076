//! The `nhi-linkage` command. All work happens in the library; this only parses arguments,
//! sets up logging and maps the outcome to an exit status.

use clap::Parser;
use nhi_linkage::commands::{self, Cli};
use nhi_linkage::complain;

// glibc malloc spent a quarter of a full load's cycles in malloc/free/consolidate
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    nhi_linkage::report::mark_started();
    nhi_linkage::private_umask();
    let cli = Cli::parse();
    if let Err(e) = nhi_linkage::logging::init(cli.verbose, cli.quiet, cli.log_format) {
        complain!("nhi-linkage: error: {e}");
        return commands::Exit::Usage.into();
    }
    match commands::dispatch(cli) {
        Ok(status) => status.into(),
        Err(e)
            if e.downcast_ref::<nhi_linkage::engine::interrupt::Interrupted>()
                .is_some() =>
        {
            complain!("nhi-linkage: {e}");
            commands::Exit::Interrupted.into()
        }
        Err(e) if e.downcast_ref::<nhi_linkage::ledger::LedgerCorrupt>().is_some() => {
            complain!("nhi-linkage: {e}");
            commands::Exit::Aborted.into()
        }
        Err(e) => {
            // Messages are built by this crate from typed values; sensitive types print masked.
            complain!("nhi-linkage: error: {e:#}");
            commands::Exit::Usage.into()
        }
    }
}
