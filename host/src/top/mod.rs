//! `tailrace top`: a terminal view of a running daemon, like `vector top`. It polls the
//! daemon's `/metrics` (`--metrics-addr`) every second and shows per pipeline and flusher the
//! rates, errors and queue fill (ratatui draws it). `q`, Esc or Ctrl-C quits. When nothing
//! answers at the address it says so and exits 1 before touching the terminal.

mod model;
mod view;

use std::time::{Duration, Instant};

use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};

use model::{Model, Sample};

const REFRESH: Duration = Duration::from_secs(1);

pub fn run(addr: &str) -> Result<(), String> {
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(2)))
            .build(),
    );
    let url = format!("http://{addr}/metrics");
    let first = scrape(&agent, &url).map_err(|e| {
        format!(
            "nothing answers at {addr} ({e}): start the daemon with --metrics-addr {addr}, or \
             give top the address it serves with --addr"
        )
    })?;
    let mut terminal = ratatui::try_init().map_err(|e| format!("cannot use the terminal: {e}"))?;
    let result = show(&mut terminal, &agent, &url, addr, first);
    ratatui::restore();
    result
}

fn scrape(agent: &ureq::Agent, url: &str) -> Result<Sample, String> {
    let mut response = agent.get(url).call().map_err(|e| e.to_string())?;
    let text = response
        .body_mut()
        .read_to_string()
        .map_err(|e| e.to_string())?;
    Sample::parse(&text)
}

fn show(
    terminal: &mut ratatui::DefaultTerminal,
    agent: &ureq::Agent,
    url: &str,
    addr: &str,
    first: Sample,
) -> Result<(), String> {
    let mut last = (first, Instant::now());
    let mut model = Model::new(&last.0, None, REFRESH);
    let mut error: Option<String> = None;
    let mut next = Instant::now() + REFRESH;
    loop {
        terminal
            .draw(|frame| {
                let status = view::Status {
                    addr,
                    error: error.as_deref(),
                };
                view::draw(frame, &model, &status);
            })
            .map_err(|e| format!("cannot draw: {e}"))?;
        let wait = next.saturating_duration_since(Instant::now());
        if event::poll(wait).map_err(|e| format!("cannot read the terminal: {e}"))? {
            if let Event::Key(key) = event::read().map_err(|e| e.to_string())? {
                let ctrl_c =
                    key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL);
                if key.kind == KeyEventKind::Press
                    && (matches!(key.code, KeyCode::Char('q') | KeyCode::Esc) || ctrl_c)
                {
                    return Ok(());
                }
            }
            continue;
        }
        next = Instant::now() + REFRESH;
        match scrape(agent, url) {
            Ok(sample) => {
                let now = Instant::now();
                model = Model::new(&sample, Some(&last.0), now - last.1);
                last = (sample, now);
                error = None;
            }
            Err(e) => error = Some(e),
        }
    }
}
