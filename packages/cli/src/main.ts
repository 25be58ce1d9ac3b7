console.log('shoal')
