//! The health-canary part of the demo (written with health-canary).

use crate::moto::BoxError;

pub async fn run() -> Result<(), BoxError> {
    Ok(())
}
