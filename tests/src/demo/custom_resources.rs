//! The custom-resources part of the demo (written with custom-resources).

use crate::moto::BoxError;

pub async fn run() -> Result<(), BoxError> {
    Ok(())
}
