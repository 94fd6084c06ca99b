//! Draws a [`Model`]: a status line, the pipelines table, the flushers table, a key hint.

use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Row, Table};
use ratatui::Frame;

use crate::top::model::Model;

/// What the status line says besides the model.
pub struct Status<'a> {
    pub addr: &'a str,
    /// The last scrape's error, if it failed (the figures shown are then the last good ones).
    pub error: Option<&'a str>,
}

pub fn draw(frame: &mut Frame, model: &Model, status: &Status) {
    let [top, pipelines, flushers, hint] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(4),
        Constraint::Min(4),
        Constraint::Length(1),
    ])
    .areas(frame.area());

    let line = match status.error {
        Some(e) => format!("tailrace top — {} — not answering: {e}", status.addr),
        None => format!(
            "tailrace top — {} — plugin base: {} — CPU {:.2} cores — RSS {}",
            status.addr,
            model.base_state,
            model.cpu_cores,
            bytes(model.rss_bytes)
        ),
    };
    frame.render_widget(Line::from(line), top);

    let bold = Style::default().add_modifier(Modifier::BOLD);
    let rows = model.pipelines.iter().map(|p| {
        Row::new(vec![
            p.name.clone(),
            count(p.events_in_per_s),
            count(p.events_out_per_s),
            format!("{}/s", bytes(p.bytes_in_per_s)),
            count(p.events_in),
            count(p.errors),
            percent(p.queue_fill),
            if p.blocked { "yes" } else { "no" }.to_owned(),
        ])
    });
    let table = Table::new(
        rows,
        [
            Constraint::Fill(3),
            Constraint::Length(10),
            Constraint::Length(10),
            Constraint::Length(12),
            Constraint::Length(10),
            Constraint::Length(8),
            Constraint::Length(7),
            Constraint::Length(8),
        ],
    )
    .header(
        Row::new(vec![
            "Pipeline", "In/s", "Out/s", "Bytes in", "Events", "Errors", "Queue", "Blocked",
        ])
        .style(bold),
    )
    .block(Block::default().borders(Borders::ALL).title("Pipelines"));
    frame.render_widget(table, pipelines);

    let rows = model.flushers.iter().map(|f| {
        Row::new(vec![
            f.pipeline.clone(),
            f.flusher.clone(),
            count(f.events_per_s),
            count(f.events),
            count(f.failures),
            count(f.panics),
            percent(f.queue_fill),
        ])
    });
    let table = Table::new(
        rows,
        [
            Constraint::Fill(3),
            Constraint::Fill(2),
            Constraint::Length(10),
            Constraint::Length(10),
            Constraint::Length(9),
            Constraint::Length(7),
            Constraint::Length(7),
        ],
    )
    .header(
        Row::new(vec![
            "Pipeline", "Flusher", "Out/s", "Events", "Failures", "Panics", "Queue",
        ])
        .style(bold),
    )
    .block(Block::default().borders(Borders::ALL).title("Flushers"));
    frame.render_widget(table, flushers);

    frame.render_widget(Line::from("q quits · refreshed every second"), hint);
}

/// 1234567 → "1.23M".
fn count(n: f64) -> String {
    match n {
        n if n >= 1e9 => format!("{:.2}G", n / 1e9),
        n if n >= 1e6 => format!("{:.2}M", n / 1e6),
        n if n >= 1e4 => format!("{:.1}k", n / 1e3),
        n => format!("{n:.0}"),
    }
}

fn bytes(n: f64) -> String {
    match n {
        n if n >= 1024.0 * 1024.0 * 1024.0 => format!("{:.1} GiB", n / (1024.0 * 1024.0 * 1024.0)),
        n if n >= 1024.0 * 1024.0 => format!("{:.1} MiB", n / (1024.0 * 1024.0)),
        n if n >= 1024.0 => format!("{:.1} KiB", n / 1024.0),
        n => format!("{n:.0} B"),
    }
}

fn percent(fill: f64) -> String {
    format!("{:.0}%", fill * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_are_short() {
        assert_eq!(count(999.0), "999");
        assert_eq!(count(12_345.0), "12.3k");
        assert_eq!(count(2_500_000.0), "2.50M");
        assert_eq!(bytes(1536.0), "1.5 KiB");
        assert_eq!(percent(0.25), "25%");
    }
}
