"""lai deblurring dataset (manual download). Builder: `lai_dataset_builder.Builder`."""
