"""realblur deblurring dataset (manual download). Builder: `realblur_dataset_builder.Builder`."""
