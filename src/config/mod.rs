//! The configuration system (C: `ec_config_*`). Placeholder until issue 3 lands.
