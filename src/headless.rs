//! Placeholder so main.rs compiles; the real JSON-lines front end replaces this file.
pub async fn run(_cli: crate::cli::Cli, _config: crate::config::Config) -> anyhow::Result<()> {
    anyhow::bail!("the headless front end is not built yet")
}
