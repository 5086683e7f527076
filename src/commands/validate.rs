//! `nhi-linkage validate` (being written).
#[derive(Debug, clap::Args)]
pub struct Args {
    pub paths: Vec<std::path::PathBuf>,
}
pub fn run(_: Args) -> anyhow::Result<super::Exit> {
    anyhow::bail!("validate is not built yet")
}
