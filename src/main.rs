//! sipterm's entry point: flags, config, logging, runtime, then a front end.

use std::process::ExitCode;

use clap::Parser;
use sipterm::cli::Cli;
use sipterm::config::Config;

/// Exit status for a config or command-line mistake the user has to fix.
const EXIT_BAD_CONFIG: u8 = 2;
/// How long the runtime's leftover tasks and threads may take after the front end returned.
const QUIT_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `sipterm completions SHELL` / `sipterm man`: no config, no logging, just the text.
    if let Some(tool) = &cli.tool {
        use std::io::Write;
        return match tool
            .render()
            .and_then(|text| std::io::stdout().write_all(&text))
        {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("sipterm: {error}");
                ExitCode::FAILURE
            }
        };
    }

    let config = match Config::load(cli.config.as_deref()) {
        Ok(config) => config.with_cli_overrides(&cli),
        Err(error) => {
            eprintln!("sipterm: {error}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    // Catch a misspelt --account now, before anything starts.
    if let Err(error) = config.account(cli.account.as_deref()) {
        eprintln!("sipterm: {error}");
        return ExitCode::from(EXIT_BAD_CONFIG);
    }

    match sipterm::logging::init(cli.verbose, &config.log) {
        Ok(path) => eprintln!("sipterm: logging to {}", path.display()),
        Err(error) => eprintln!("sipterm: not logging: {error}"),
    }

    if cli.list_devices {
        print!("{}", sipterm::media::audio::list_devices());
        return ExitCode::SUCCESS;
    }

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("sipterm: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = if cli.headless {
        runtime.block_on(sipterm::headless::run(cli, config))
    } else {
        runtime.block_on(sipterm::ui::run(cli, config))
    };
    // tokio's stdin reader is a blocking thread parked in read(2); dropping the runtime waits for
    // it, i.e. until stdin is closed, so `quit` with the pipe still open never exited. Give the
    // tasks a moment to finish (they close WAV files) and then leave without the reader.
    runtime.shutdown_timeout(QUIT_GRACE);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("sipterm: {error:#}");
            ExitCode::FAILURE
        }
    }
}
