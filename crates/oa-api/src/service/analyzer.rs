//! Analyzer mode: the per-user switch between the live broker and the sandbox, stored in
//! the settings table.

use axum::http::StatusCode;

use super::{OrderService, Result, store_error};
use crate::idempotency::Claim;
use crate::responses::{AnalyzerData, Data, Reply};
use crate::store::StoreError;
use crate::types::AccountMode;

/// The name of the per-user analyzer setting.
pub(crate) const ANALYZE_MODE_SETTING: &str = "analyze_mode";

impl OrderService {
    fn analyzer_data(&self, user_id: &str, mode: AccountMode) -> AnalyzerData {
        AnalyzerData {
            mode: mode.as_str(),
            analyze_mode: mode == AccountMode::Analyze,
            total_logs: self.engine.analyzer_log_count(user_id),
            message: None,
        }
    }

    /// analyzer.
    pub fn analyzer_status(&self, user_id: &str) -> Reply<Data<AnalyzerData>> {
        Reply::new(Data {
            data: self.analyzer_data(user_id, self.mode(user_id)),
        })
    }

    /// analyzer/toggle: persists the switch (and, with an `Idempotency-Key`, the response in
    /// the same transaction), then answers with the new status.
    pub async fn analyzer_toggle(
        &self,
        user_id: &str,
        analyze: bool,
        claim: Option<Claim>,
    ) -> Result<Reply<Data<AnalyzerData>>> {
        let mode = AccountMode::from_analyze_flag(analyze);
        let user = user_id.to_string();
        let response = Reply::new(Data {
            data: AnalyzerData {
                message: Some(format!("Analyzer mode switched to {}", mode.as_str())),
                ..self.analyzer_data(user_id, mode)
            },
        });
        let replay = claim.map(|claim| claim.entry(StatusCode::OK, &response.to_value()));
        self.engine
            .run(move |ctx| -> std::result::Result<(), StoreError> {
                ctx.set_setting(
                    &user,
                    ANALYZE_MODE_SETTING,
                    if analyze { "true" } else { "false" },
                )?;
                if let Some(replay) = replay {
                    ctx.tx().save_idempotency(&replay, ctx.now_ms)?;
                }
                Ok(())
            })
            .await
            .map_err(store_error)?
            .map_err(store_error)?;
        self.modes.write().insert(user_id.to_string(), mode);
        Ok(response)
    }
}
