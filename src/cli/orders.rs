//! `orders list` and `orders show`.

use super::with_services;
use crate::config::Prepared;
use crate::domain::OrderId;

pub(super) fn orders_list(
    prepared: Prepared,
    status: Option<String>,
    limit: i64,
) -> anyhow::Result<()> {
    if let Some(s) = &status
        && crate::domain::OrderStatus::parse(s).is_none()
    {
        return Err(super::usage(format!(
            "--status {s:?} is not an order status (awaiting_payment, implementing, awaiting_confirmation, completed, cancelled)"
        )));
    }
    if !(1..=100_000).contains(&limit) {
        return Err(super::usage(format!(
            "--limit {limit} must be between 1 and 100000"
        )));
    }
    with_services(&prepared, async |services| {
        let status = status
            .as_deref()
            .and_then(crate::domain::OrderStatus::parse);
        let orders = services.orders(status, limit).await?;
        let rows: Vec<[String; 5]> = orders
            .into_iter()
            .map(|o| {
                [
                    o.commodity_order_id,
                    o.status,
                    o.cancel_reason.unwrap_or_else(|| "-".into()),
                    o.mini_app_id.unwrap_or_else(|| "-".into()),
                    o.ordered_at.format("%Y-%m-%d %H:%M:%SZ").to_string(),
                ]
            })
            .collect();
        print!(
            "{}",
            table(
                &[
                    "ORDER",
                    "STATUS",
                    "CANCEL REASON",
                    "MINI PROGRAM",
                    "ORDERED AT"
                ],
                &rows
            )
        );
        Ok(())
    })
}

/// A plain, left-aligned text table, columns two spaces apart, with a header row.
fn table<const N: usize>(header: &[&str; N], rows: &[[String; N]]) -> String {
    let mut widths = header.map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut text = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 < N {
                text.push_str(cell);
                text.push_str(&" ".repeat(w - cell.chars().count() + 2));
            } else {
                text.push_str(cell);
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

pub(super) fn orders_show(prepared: Prepared, order: String) -> anyhow::Result<()> {
    with_services(&prepared, async |services| {
        let view = services.order(&OrderId::from(order.as_str())).await?;
        match view {
            Some(view) => {
                println!("{}", serde_json::to_string_pretty(&view)?);
                Ok(())
            }
            None => Err(super::not_found(format!("no order {order:?}"))),
        }
    })
}
