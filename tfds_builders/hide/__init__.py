"""hide deblurring dataset (manual download). Builder: `hide_dataset_builder.Builder`."""
